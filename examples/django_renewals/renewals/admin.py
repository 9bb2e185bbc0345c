from django.contrib import admin
from renewals.models import Insuree, Policy


@admin.register(Insuree)
class InsureeAdmin(admin.ModelAdmin):
    list_display = ("chf_id", "last_name", "other_names", "phone")
    search_fields = ("chf_id", "last_name")


@admin.register(Policy)
class PolicyAdmin(admin.ModelAdmin):
    list_display = ("id", "insuree", "product", "expiry_date", "status", "renewal_job")
    list_filter = ("status", "product")
