"""Setuptools entry; metadata lives in setup.cfg. The data files make the repo root an
ament_python package (``colcon build``): package index marker, package.xml, launch files, configs."""
from glob import glob

from setuptools import setup

PACKAGE = "dyna_stream"

setup(
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/configs", glob("configs/*.yaml")),
    ],
)
