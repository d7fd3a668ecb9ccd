"""rsseg engine."""
