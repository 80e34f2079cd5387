"""The Frechet distance between two sets of features, written out (the "FID" formula).

Fit a Gaussian to each set of features (mean mu, covariance Sigma). The Frechet (2-Wasserstein)
distance between N(mu_1, Sigma_1) and N(mu_2, Sigma_2) is (Dowson & Landau 1982; Heusel et
al. 2017, eq. 6):

    d^2 = |mu_1 - mu_2|^2 + Tr(Sigma_1 + Sigma_2 - 2 (Sigma_1 Sigma_2)^{1/2})

The matrix square root. Sigma_1 Sigma_2 is not symmetric, so the usual code calls a general
`scipy.linalg.sqrtm` (a Schur decomposition in complex arithmetic, which can return small
imaginary parts). We only need its trace, and Sigma_1 Sigma_2 is similar to the symmetric
positive semi-definite matrix M = Sigma_1^{1/2} Sigma_2 Sigma_1^{1/2}
(M = Sigma_1^{1/2} (Sigma_1 Sigma_2) Sigma_1^{-1/2}), so both have the same eigenvalues
lambda_i >= 0 and

    Tr((Sigma_1 Sigma_2)^{1/2}) = Tr(M^{1/2}) = sum_i sqrt(lambda_i(M)).

A symmetric matrix square root only needs `torch.linalg.eigh` (real, stable). We work in
float64: the distance is a small difference of large traces, and in float32 the eigenvalues
of a near-singular covariance lose most of their digits, which the subtraction then amplifies.

The distance depends on the number of samples (the covariance estimate is biased), so a value
means little alone: `frechet_with_floor` reports beside it the real-vs-real floor, the distance
between two disjoint sets of real features of the same size.
"""

import torch


def sqrtm_psd(matrix: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix, (D, D) -> (D, D):
    S = V diag(lambda) V^T  =>  S^{1/2} = V diag(sqrt(max(lambda, 0))) V^T."""
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"sqrtm_psd expects a square matrix, got shape {tuple(matrix.shape)}")
    symmetric = (matrix + matrix.T) / 2  # remove round-off asymmetry before eigh
    eigenvalues, eigenvectors = torch.linalg.eigh(symmetric)
    # small negative eigenvalues are round-off of a PSD matrix: clamp them to zero
    return eigenvectors @ torch.diag(eigenvalues.clamp(min=0).sqrt()) @ eigenvectors.T


def gaussian_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D), in float64."""
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"features must be (N, D) with N >= 2, got shape {tuple(features.shape)}")
    features = features.double()
    mu = features.mean(0)
    centred = features - mu
    # Sigma = (X - mu)^T (X - mu) / (N - 1)
    sigma = centred.T @ centred / (features.shape[0] - 1)
    return mu, sigma


def frechet_distance_from_statistics(
    mu_1: torch.Tensor, sigma_1: torch.Tensor, mu_2: torch.Tensor, sigma_2: torch.Tensor
) -> float:
    """d^2 = |mu_1 - mu_2|^2 + Tr(Sigma_1) + Tr(Sigma_2) - 2 Tr((Sigma_1^{1/2} Sigma_2 Sigma_1^{1/2})^{1/2})."""
    mu_1, sigma_1, mu_2, sigma_2 = (t.double() for t in (mu_1, sigma_1, mu_2, sigma_2))
    sqrt_sigma_1 = sqrtm_psd(sigma_1)
    # M = Sigma_1^{1/2} Sigma_2 Sigma_1^{1/2}, symmetric PSD, same eigenvalues as Sigma_1 Sigma_2
    middle = sqrt_sigma_1 @ sigma_2 @ sqrt_sigma_1
    eigenvalues = torch.linalg.eigvalsh((middle + middle.T) / 2)
    # Tr((Sigma_1 Sigma_2)^{1/2}) = sum_i sqrt(lambda_i(M))
    trace_sqrt = eigenvalues.clamp(min=0).sqrt().sum()
    squared_mean_distance = (mu_1 - mu_2).pow(2).sum()
    return float(squared_mean_distance + torch.trace(sigma_1) + torch.trace(sigma_2) - 2 * trace_sqrt)


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Frechet distance between two sets of features, (N, D) and (M, D) -> float."""
    if features_a.ndim != 2 or features_b.ndim != 2 or features_a.shape[1] != features_b.shape[1]:
        raise ValueError(
            "features must be (N, D) and (M, D) with the same D, "
            f"got {tuple(features_a.shape)} and {tuple(features_b.shape)}"
        )
    return frechet_distance_from_statistics(*gaussian_statistics(features_a), *gaussian_statistics(features_b))


def frechet_with_floor(
    real_features: torch.Tensor, generated_features: torch.Tensor, seed: int = 0
) -> dict[str, float]:
    """The Frechet distance of generated vs real features, beside the real-vs-real floor.

    The floor compares two disjoint random halves of the real features, each of
    n = min(len(generated), len(real) // 2) samples; the generated value uses n generated
    samples against one of the halves, so both numbers carry the same small-sample bias.
    Returns {"frechet": generated vs real, "floor": real vs real, "n": samples per set}.
    """
    n = min(len(generated_features), len(real_features) // 2)
    if n < 2:
        raise ValueError(
            f"need >= 4 real and >= 2 generated features, got {len(real_features)} and {len(generated_features)}"
        )
    order = torch.randperm(len(real_features), generator=torch.Generator().manual_seed(seed))
    half_a, half_b = real_features[order[:n]], real_features[order[n : 2 * n]]
    return {
        "frechet": frechet_distance(half_a, generated_features[:n]),
        "floor": frechet_distance(half_a, half_b),
        "n": n,
    }
