#!/usr/bin/env python3
"""Prints the settings the app would use."""

import configparser

config = configparser.ConfigParser()
config.read("/opt/berth-examples/overwrite-retain/config/settings.ini")
print(dict(config["app"]) if config.has_section("app") else "no settings")
