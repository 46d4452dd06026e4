from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("moodle-archive-operator")
except PackageNotFoundError:  # running from a source tree without installation
    VERSION = "0.0.0+unknown"
