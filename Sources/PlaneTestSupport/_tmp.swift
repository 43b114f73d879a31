enum _PlaceholderPlaneTestSupport {}
