from django.apps import AppConfig


class RenewalsConfig(AppConfig):
    name = "renewals"
    verbose_name = "Policy renewals"
    default_auto_field = "django.db.models.BigAutoField"
