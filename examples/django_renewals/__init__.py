"""An openIMIS-like Django project on finejobs: insurees, their policies, and a weekly schedule that renews
the policies coming due, one finejobs job per policy (``python examples/django_renewals/manage.py ...``;
see docs/django.md)."""
