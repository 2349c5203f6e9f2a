"""Setuptools entry; metadata lives in setup.cfg. The data files make the repo root an
ament_python package (``colcon build``): package index marker, package.xml, launch files, configs.
python_requires stays here as a string: colcon reads the metadata of the call below through repr(),
which a setup.cfg-parsed SpecifierSet breaks. (This text must not name the call with its parentheses:
colcon then takes the file for a setup.cfg-only package and skips the data files.)"""
from glob import glob

from setuptools import setup

PACKAGE = "dyna_stream"

setup(
    python_requires=">=3.10",
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/configs", glob("configs/*.yaml")),
    ],
)
