"""GPU host agent: registers this host with the server, heartbeats and runs pod containers.

A standalone program (``python -m agent``); it never imports Django.
"""

__version__ = "0.2.0"
