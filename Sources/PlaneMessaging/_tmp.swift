enum _PlaceholderPlaneMessaging {}
