"""Dosage reminders: one durable alert job per patient dose, sent through an SMS/IVR gateway."""
