# Sourced by test.sh after setup.sh: the independent InceptionV3 implementations that
# tests/test_inception.py compares genzoo's network with (torch-fidelity, pytorch-fid, torchvision).
# They need torchvision, so they are not dependencies: their wheels are fetched once with pip into
# $VENV/inception-refs and only their three model files are used, each checked against its sha256.
REFS="$VENV/inception-refs"
refs_ok() {
  (cd "$REFS/unpacked" 2>/dev/null && sha256sum --quiet -c - <<'SUMS'
41308fd162a3571d8bf052e2dbf7b25f946daa5a74a591d1b85b76ca7ba0262f  torch_fidelity/feature_extractor_inceptionv3.py
5c5af6e5f71dfdad17d85c3b87b6751c0cc515ca8e389ae90211573e520abf17  pytorch_fid/inception.py
6791db7e2ee8b7a29359acb6d20d9e5b474418ba46c0ddba5bcc15d253b8ad85  torchvision/models/inception.py
SUMS
  ) >/dev/null 2>&1
}
if ! refs_ok; then
  echo "[setup] fetching the reference InceptionV3 implementations (torch-fidelity, pytorch-fid, torchvision wheels)"
  rm -rf "$REFS"
  mkdir -p "$REFS/unpacked"
  "$VPY" -m pip download --disable-pip-version-check -q --no-deps --only-binary=:all: -d "$REFS" \
    torch-fidelity==0.4.0 pytorch-fid==0.3.0 torchvision==0.28.0
  for w in "$REFS"/*.whl; do
    "$VPY" -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$w" "$REFS/unpacked"
  done
  refs_ok || { echo "[setup] the reference model files do not match their pinned sha256"; exit 1; }
fi
export GENZOO_INCEPTION_REFS="$REFS/unpacked"
