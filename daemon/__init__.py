"""The daemon (``python service.py run``): schedules, one leader, hot reload, health and metrics."""
