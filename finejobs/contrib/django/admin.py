"""The Django admin's pages for finejobs: jobs, schedules, job kinds, shards and workers (see admin_base)."""

from __future__ import annotations

from django.contrib import admin

from finejobs.contrib.django.admin_jobs import JobAdmin
from finejobs.contrib.django.admin_ops import KindAdmin, ShardAdmin, WorkerAdmin
from finejobs.contrib.django.admin_schedules import ScheduleAdmin
from finejobs.contrib.django.models import Job, Kind, Schedule, Shard, Worker

admin.site.register(Job, JobAdmin)
admin.site.register(Schedule, ScheduleAdmin)
admin.site.register(Kind, KindAdmin)
admin.site.register(Shard, ShardAdmin)
admin.site.register(Worker, WorkerAdmin)
