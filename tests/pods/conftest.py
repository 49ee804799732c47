"""The pods' tests build with tests/factories.py; `owner_client` is in tests/conftest.py."""
