"""Hyperbolic ternary VAE (v5.12.5 design): embeds the 3^9 ternary operations in a Poincaré ball.

See ``ternary_vae/README.md`` for what it trains and how; ``configs/ternary_vae.py`` for profiles.
"""
