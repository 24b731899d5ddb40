"""The browser dashboard: HTML shells (templates/) and one script (static/) over the JSON API."""
