"""Small ASGI pieces both tiers wrap themselves in (one middleware per module).

Below the tiers: they import nothing of tierlake's web, app or data layers.
"""
