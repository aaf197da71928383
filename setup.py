from pathlib import Path

from setuptools import find_packages, setup

# torch is listed as a range that the CPU build torch==2.13.0 satisfies; the Makefile installs that build first so
# pip never resolves the multi-GB CUDA wheels.
install_requires = [
    "torch>=2.4",
    "transformers>=5.0,<6",
    "trl>=1.0,<2",
    "peft>=0.17",
    "datasets>=4.0",
    "accelerate>=1.0",
    "huggingface-hub>=1.0",
    "sentence-transformers>=5.0",
    "safetensors",
    "pillow>=10",
    "pyyaml",
    "tqdm",
    "matplotlib",
    "numpy",
]

extras = {
    "faiss": ["faiss-cpu>=1.8"],
    "deepspeed": ["deepspeed>=0.15"],
    "test": ["pytest>=8", "pytest-timeout", "ruff>=0.6", "faiss-cpu>=1.8"],
}
extras["dev"] = sorted(set(extras["test"] + extras["faiss"] + extras["deepspeed"]))

setup(
    name="unime-hf",
    version="0.1.0.dev0",
    description="Universal multimodal embeddings (UniME-V2, Embed-RL) for the Hugging Face ecosystem",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    package_dir={"": "src"},
    packages=find_packages("src"),
    package_data={"unime_hf": ["py.typed"], "unime_hf.hub.templates": ["*.md"]},
    include_package_data=True,
    python_requires=">=3.10",
    install_requires=install_requires,
    extras_require=extras,
    entry_points={"console_scripts": ["unime-hf=unime_hf.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
