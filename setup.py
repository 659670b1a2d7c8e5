"""Only what setup.cfg cannot say: the builders' tests (`*_test.py`, kept beside each builder
as in TFDS's layout) stay out of the installed package."""

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithoutTests(build_py):

  def find_package_modules(self, package, package_dir):
    modules = super().find_package_modules(package, package_dir)
    return [m for m in modules if not m[1].endswith("_test")]


setup(cmdclass={"build_py": BuildPyWithoutTests})
