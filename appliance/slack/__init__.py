"""Slack: the `/what-happened` slash command, its buttons and the Full timeline modal."""
