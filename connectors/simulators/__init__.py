"""Offline stand-ins for the marketplaces: traffic generators now, platform API simulators next."""
