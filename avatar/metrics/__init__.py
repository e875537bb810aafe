"""Image and lip metrics, shared by training (SSIM as a loss) and evaluation."""
