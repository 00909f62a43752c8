"""Faces in frames: MediaPipe detection + landmarks, tracking, head pose, gaze, eye/mouth geometry."""
