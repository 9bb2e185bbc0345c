"""Insurees and their policies, the way openIMIS keeps them (much simplified)."""

from __future__ import annotations

from django.db import models


class Insuree(models.Model):
    chf_id = models.CharField("insurance number", max_length=12, unique=True)
    last_name = models.CharField(max_length=100)
    other_names = models.CharField(max_length=100)
    phone = models.CharField(max_length=20, blank=True)

    def __str__(self) -> str:
        return f"{self.chf_id} {self.other_names} {self.last_name}"


class Policy(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        RENEWAL_QUEUED = "renewal_queued"
        RENEWED = "renewed"
        LAPSED = "lapsed"

    insuree = models.ForeignKey(Insuree, on_delete=models.CASCADE, related_name="policies")
    product = models.CharField(max_length=50)
    start_date = models.DateField()
    expiry_date = models.DateField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    renewal_queued_at = models.DateTimeField(null=True, blank=True)
    renewal_job = models.CharField(max_length=20, blank=True)  # the TaskResult id of its renewal
    renewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "policies"

    def __str__(self) -> str:
        return f"policy {self.pk} ({self.product}, {self.insuree.chf_id}, until {self.expiry_date})"
