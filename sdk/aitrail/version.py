"""The version of the SDK, written into every record it sends (``sdk_version``)."""

SDK_VERSION = "0.1.0"
