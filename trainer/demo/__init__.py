"""The built-in seeded demo data sets that `edge-train make-demo` writes (`demo_data`: shapes,
`clutter_demo`: small objects in clutter)."""
