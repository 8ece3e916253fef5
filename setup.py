"""Only the compiled part of the distribution; everything else is in pyproject.toml.

The hashing loops of the collector (collector/aitrail_collector/native/) are C linked to
OpenSSL's libcrypto. The extension is optional: `pip install aitrail` on a machine without
a compiler or the OpenSSL headers still installs, and the collector then runs the
pure-Python reference code, saying so once at start-up (aitrail_collector.native).
scripts/install puts gcc, the Python headers and libssl-dev on a Debian machine first.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "aitrail_collector.native._hashing",
    sources=["collector/aitrail_collector/native/_hashing.c"],
    libraries=["crypto"],
    extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra"],
    optional=True,
)])
