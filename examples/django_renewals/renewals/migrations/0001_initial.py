"""Insurees and policies."""

import django.db.models.deletion
from django.db import migrations, models

STATUSES = [("active", "Active"), ("renewal_queued", "Renewal Queued"), ("renewed", "Renewed"), ("lapsed", "Lapsed")]


class Migration(migrations.Migration):
    initial = True
    dependencies: list[tuple[str, str]] = []  # noqa: RUF012
    operations = [  # noqa: RUF012
        migrations.CreateModel(
            name="Insuree",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("chf_id", models.CharField(max_length=12, unique=True, verbose_name="insurance number")),
                ("last_name", models.CharField(max_length=100)),
                ("other_names", models.CharField(max_length=100)),
                ("phone", models.CharField(blank=True, max_length=20)),
            ],
        ),
        migrations.CreateModel(
            name="Policy",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("product", models.CharField(max_length=50)),
                ("start_date", models.DateField()),
                ("expiry_date", models.DateField()),
                ("status", models.CharField(choices=STATUSES, default="active", max_length=20)),
                ("renewal_queued_at", models.DateTimeField(blank=True, null=True)),
                ("renewal_job", models.CharField(blank=True, max_length=20)),
                ("renewed_at", models.DateTimeField(blank=True, null=True)),
                ("insuree", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="policies",
                                              to="renewals.insuree")),
            ],
            options={"verbose_name_plural": "policies"},
        ),
    ]
