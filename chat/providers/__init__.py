"""The provider layer: typed events out of the official SDKs, read lean."""
