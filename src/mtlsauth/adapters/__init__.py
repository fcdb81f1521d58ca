"""Framework adapters, imported by full path (mtlsauth.adapters.asgi, .wsgi, .aiohttp)."""
