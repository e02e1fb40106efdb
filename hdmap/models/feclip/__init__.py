"""FE-CLIP (Gong et al., ICCV 2025): frozen CLIP + frequency adapters (FFE, LFS) for zero-shot anomaly detection."""
