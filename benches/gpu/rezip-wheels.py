"""Zip each folder under SRC (an unpacked wheel, named as the wheel) back into DEST/<name>.

bundle.sh carries the nixl and LMCache wheels as their xz-packed contents (less than half the
size of the wheels); `gpu-apply.sh unbundle` restores the wheels with this, each file's mode
kept (pip sets a file's executable bit from it), for `pip install` as before.
Usage: python3 rezip-wheels.py SRC DEST
"""

import os
import sys
import zipfile


def rezip(src: str, dest: str) -> None:
    for name in sorted(os.listdir(src)):
        unpacked = os.path.join(src, name)
        with zipfile.ZipFile(os.path.join(dest, name), "w", zipfile.ZIP_STORED) as wheel:
            for folder, _, files in sorted(os.walk(unpacked)):
                for file in sorted(files):
                    path = os.path.join(folder, file)
                    wheel.write(path, os.path.relpath(path, unpacked))
        print("wheel restored:", name, flush=True)


if __name__ == "__main__":
    rezip(sys.argv[1], sys.argv[2])
