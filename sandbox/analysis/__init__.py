"""What you ask of a trained run: functions returning data (+ figures)."""
