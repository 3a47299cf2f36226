"""ASR components: log-mel frontend, frame stacking, the A2W decoder."""
