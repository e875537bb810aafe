"""`avatar export`: a fitted avatar written as files other tools open (3D Gaussian splatting PLY)."""
