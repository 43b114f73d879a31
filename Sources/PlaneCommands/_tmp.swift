enum _PlaceholderPlaneCommands {}
