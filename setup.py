from setuptools import find_packages, setup

setup(
    name="nnunetv2-neurino",
    version="0.1.0",
    description="NeurINO for nnU-Net v2: DINOv3-inflated 3D ConvNeXt, TASL, neuron tracing and metrics",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # everything installs under the package's own name (converters and trainer configs included), so no
    # generic top-level name such as `dataset_conversion` lands in site-packages
    packages=find_packages(include=["nnunetv2_neurino", "nnunetv2_neurino.*"]),
    package_data={"nnunetv2_neurino.trainer_configs": ["*.json", "README.md"]},
    include_package_data=True,
    install_requires=[
        "nnunetv2>=2.8.0,<2.9",
        "timm",
        "fvcore",
        "safetensors",
        "scikit-image",
        "scipy",
        "edt",
        "connected-components-3d",
        "tifffile",
        "SimpleITK",
        "tqdm",
        "matplotlib",
        "zarr>=3",
        "dask[distributed]",
        "h5py",
    ],
    extras_require={
        "test": ["pytest", "pytest-timeout", "ruff", "morphio", "swcgeom"],
    },
    entry_points={"console_scripts": ["neurino=nnunetv2_neurino.cli:main"]},
)
