"""Fine-tuning the stitching and eye/lip retargeting heads (see README, "Fine-tuning")."""
