enum _PlaceholderNATS {}
