"""Install recbole_hymirec; ``properties/`` is shipped inside the package as
``recbole_hymirec/properties`` so an installed wheel finds its YAML files."""
import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read_version():
    with open(os.path.join(HERE, "recbole_hymirec", "__init__.py"), encoding="utf-8") as f:
        return re.search(r'^__version__ = "([^"]+)"', f.read(), re.M).group(1)


def read_readme():
    with open(os.path.join(HERE, "README.md"), encoding="utf-8") as f:
        return f.read()


INSTALL_REQUIRES = [
    "recbole>=1.2.1,<1.3",
    "torch>=2.6",
    "transformers>=4.46",
    "peft>=0.13",
    "gguf>=0.10",  # reads the packaged SmolLM2 GGUF file
    "pyyaml>=6",
    "scipy>=1.10",
    "tqdm>=4",
    "matplotlib>=3.5",  # the leaderboard's png
    "hyperopt==0.2.5",  # RecBole 1.2.1's exhaustive search passes a RandomState (0.2.7+ need a Generator)
    # numpy 2 and pandas 3 run through the shims in compat.py (tested up to those majors);
    # RecBole 1.2.1 breaks on setuptools >= 81 (ray imports pkg_resources).
    "numpy>=1.24,<3",
    "pandas>=1.5,<4",
    "setuptools<81",
]

setup(
    name="recbole_hymirec",
    version=read_version(),
    description="HyMiRec: hybrid multi-interest LLM-based sequential recommendation as a RecBole plugin",
    long_description=read_readme(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.9",
    packages=find_packages(include=["recbole_hymirec", "recbole_hymirec.*"])
    + ["recbole_hymirec.properties"],
    package_dir={"recbole_hymirec.properties": "properties"},
    package_data={"recbole_hymirec.properties": ["*.yaml", "*/*.yaml", "hyper/*.hyper"]},
    include_package_data=True,
    py_modules=["run_recbole_hymirec"],
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": ["pytest>=7", "wheel"]},
    entry_points={"console_scripts": ["recbole_hymirec=run_recbole_hymirec:main"]},
)
