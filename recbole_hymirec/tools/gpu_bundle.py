"""A bundle that sets up the GPU check on a machine without RecBole, gguf or network.

Here (where the plugin is installed and a package registry is reachable):

    python -m recbole_hymirec.tools.gpu_bundle --out DIR [--python-version 3.12]

writes ``DIR/wheels/`` (wheels of what such a machine lacks, for its Python: RecBole 1.2.1,
the dependencies it imports, gguf, this package's own wheel), ``DIR/llm/`` (the packaged
SmolLM2 GGUF file in parts of at most ``--part_mib`` MiB) and ``DIR/manifest.json`` (every
file's size and sha256). No file is larger than one transfer.

On the GPU machine, from the repository root (this file runs by its path: it needs nothing
but the standard library, and the package cannot be imported before RecBole is there):

    python recbole_hymirec/tools/gpu_bundle.py --install DIR [-- GPU_CHECK_ARGS]

checks every file against the manifest, joins the LLM parts (checked again as a whole), pip
installs the wheels offline (``--no-index --find-links``; what is installed already stays),
then runs ``python -m recbole_hymirec.tools.gpu_check --llm_path=JOINED_FILE``.
"""
import argparse
import hashlib
import importlib.util
import json
import os
import subprocess
import sys

MANIFEST = "manifest.json"
PART_MIB = 56  # under a 64 MiB transfer, with room for the manifest
# What the GPU check imports that a machine with torch, transformers, peft, numpy, pandas and
# scipy lacks (installed without dependencies: RecBole's other requirements, e.g. ray,
# plotly and hyperopt, are not imported on this path).
REQUIREMENTS = (
    "recbole==1.2.1", "colorlog==4.7.2", "colorama==0.4.4", "texttable", "thop",
    "tensorboard", "absl-py", "protobuf", "scikit-learn", "joblib", "threadpoolctl",
    "gguf", "setuptools<81", "matplotlib", "contourpy", "cycler", "fonttools", "kiwisolver",
    "pyparsing", "pillow",
)
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64", "any")


class BundleError(Exception):
    """A bundle file that is missing or damaged: the message names it and the fix."""


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--out", help="write a bundle into this folder")
    action.add_argument("--install", metavar="DIR", help="install from the bundle in DIR")
    parser.add_argument("--python-version", default="3.12", help="the GPU machine's Python")
    parser.add_argument("--platform", action="append", default=None,
                        help=f"wheel platform tags (repeatable; default: {' '.join(PLATFORMS)})")
    parser.add_argument("--part_mib", type=int, default=PART_MIB,
                        help="largest LLM part in MiB (default: %(default)s)")
    return parser


# ----------------------------------------------------------------------------- files

def _atomic_writer():
    """``write_atomic`` of the package's atomic.py, loaded by its path (see the module doc)."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "atomic.py")
    spec = importlib.util.spec_from_file_location("_hymirec_atomic", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.atomic_open, module.write_atomic


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_entry(folder, relative):
    path = os.path.join(folder, relative)
    return {"name": relative, "size": os.path.getsize(path), "sha256": sha256_of(path)}


def split_file(path, folder, part_bytes):
    """``path`` cut into ``folder/NAME.partNN`` of at most ``part_bytes``; their names."""
    _, write_atomic = _atomic_writer()
    os.makedirs(folder, exist_ok=True)
    names = []
    with open(path, "rb") as source:
        for block in iter(lambda: source.read(part_bytes), b""):
            names.append(f"{os.path.basename(path)}.part{len(names):02d}")
            write_atomic(os.path.join(folder, names[-1]), block)
    return names


def check_file(folder, entry):
    """Raise BundleError when ``entry``'s file is missing or differs from the manifest."""
    path = os.path.join(folder, entry["name"])
    fix = "Fix: copy that file from the bundle again (or make a new bundle with --out)."
    if not os.path.isfile(path):
        raise BundleError(f"bundle file {entry['name']} is missing from {folder}. {fix}")
    if os.path.getsize(path) != entry["size"] or sha256_of(path) != entry["sha256"]:
        raise BundleError(f"bundle file {entry['name']} is damaged (its sha256 differs from "
                          f"{MANIFEST}). {fix}")


def join_parts(folder, llm):
    """The LLM file joined from its checked parts, checked as a whole: its path."""
    atomic_open, _ = _atomic_writer()
    for part in llm["parts"]:
        check_file(folder, part)
    target = os.path.join(folder, llm["name"])
    with atomic_open(target) as out:
        for part in llm["parts"]:
            with open(os.path.join(folder, part["name"]), "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    out.write(block)
    if sha256_of(target) != llm["sha256"]:
        raise BundleError(f"{llm['name']} joined from its parts differs from {MANIFEST}. "
                          "Fix: make a new bundle with --out.")
    return target


def read_manifest(folder):
    path = os.path.join(folder, MANIFEST)
    if not os.path.isfile(path):
        raise BundleError(f"{folder} holds no {MANIFEST}: it is not a bundle. Fix: make one "
                          "with python -m recbole_hymirec.tools.gpu_bundle --out DIR.")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# ----------------------------------------------------------------------------- making one

def download_wheels(folder, python_version, platforms):
    """Wheels of ``REQUIREMENTS`` for ``python_version``, without their dependencies."""
    abi = "cp" + python_version.replace(".", "")
    command = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--no-deps",
               "--python-version", python_version, "--implementation", "cp", "--abi", abi,
               "--dest", folder, *[f"--platform={p}" for p in platforms], *REQUIREMENTS]
    subprocess.run(command, check=True)


def build_own_wheel(folder):
    """This package's wheel, built from the checkout it runs from."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", folder, root], check=True)


def make_bundle(out, python_version, platforms, part_mib, llm_file=None, fetch_wheels=True):
    """Write a bundle into ``out`` (see the module doc); returns the manifest."""
    wheels = os.path.join(out, "wheels")
    os.makedirs(wheels, exist_ok=True)
    if fetch_wheels:
        download_wheels(wheels, python_version, platforms)
        build_own_wheel(wheels)
    if llm_file is None:
        from recbole_hymirec.model.llm import packaged_smollm2_path

        llm_file = packaged_smollm2_path()
    parts = split_file(llm_file, os.path.join(out, "llm"), part_mib * 2**20)
    manifest = {
        "python_version": python_version, "requirements": list(REQUIREMENTS),
        "wheels": [file_entry(out, os.path.join("wheels", n)) for n in sorted(os.listdir(wheels))],
        "llm": {"name": os.path.join("llm", os.path.basename(llm_file)),
                "sha256": sha256_of(llm_file), "size": os.path.getsize(llm_file),
                "parts": [file_entry(out, os.path.join("llm", n)) for n in parts]},
    }
    _, write_atomic = _atomic_writer()
    write_atomic(os.path.join(out, MANIFEST), json.dumps(manifest, indent=1) + "\n")
    return manifest


# ----------------------------------------------------------------------------- using one

def install_wheels(folder, manifest):
    """pip install the bundle's requirements and this package offline, without dependencies;
    a requirement already installed is left as it is."""
    for entry in manifest["wheels"]:
        check_file(folder, entry)
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps",
                    "--find-links", os.path.join(folder, "wheels"),
                    *manifest["requirements"], "recbole_hymirec"], check=True)


def install_and_check(folder, check_args):
    manifest = read_manifest(folder)
    llm_path = join_parts(folder, manifest["llm"])
    install_wheels(folder, manifest)
    command = [sys.executable, "-m", "recbole_hymirec.tools.gpu_check",
               f"--llm_path={llm_path}", *check_args]
    return subprocess.run(command).returncode


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    args, check_args = build_parser().parse_args(argv[:cut]), argv[cut + 1:]
    try:
        if args.install:
            return install_and_check(args.install, check_args)
        manifest = make_bundle(args.out, args.python_version, args.platform or PLATFORMS,
                               args.part_mib)
    except BundleError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    largest = max(e["size"] for e in manifest["wheels"] + manifest["llm"]["parts"])
    print(f"wrote {args.out}: {len(manifest['wheels'])} wheels, "
          f"{len(manifest['llm']['parts'])} LLM parts, largest file {largest / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
