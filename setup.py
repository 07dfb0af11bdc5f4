"""official_selftrain: Rethinking Pre-training and Self-training, runnable."""

import setuptools

# The TF stack that installs and works together (see README, "Dependencies").
# numpy < 2.4: with 2.4, Model Garden 2.20's COCO evaluator fails
# ("only 0-dimensional arrays can be converted to Python scalars").
INSTALL_REQUIRES = [
  'tensorflow~=2.20.0',
  'tf-models-official~=2.20.0',
  'tf-keras~=2.20.0',
  'numpy<2.4',
  'pycocotools',
  'gin-config',
  'tensorflow-datasets',
  'absl-py',
  'Pillow',
  'PyYAML',
  'scipy',  # SBD's .mat labels (create_voc_tfrecords)
]

# Installed tools: `official_selftrain_NAME` and `python -m
# official_selftrain.tools.NAME` (tools/NAME.py in a checkout is the same).
TOOLS = (
  'create_shapes_tfrecords',
  'create_coco_tfrecords',
  'create_voc_tfrecords',
  'export_pseudo_labels',
  'export_saved_model',
  'visualize',
  'benchmark',
  'learning_curve',
  'seed_study',
  'inspect_backbone',
  'release_teacher',
)

setuptools.setup(
  name='official_selftrain',
  version='0.1.0',
  description=(
    'Self-training and pre-training for detection and '
    'segmentation (Zoph et al., NeurIPS 2020) on TF Model Garden.'
  ),
  python_requires='>=3.10',
  packages=setuptools.find_packages(
    include=['official_selftrain', 'official_selftrain.*']
  )
  + ['official_selftrain.gin_configs'],
  # The gin configs live at the top of the repository and ship inside the
  # package, so `--gin_file=coco_s4.gin` resolves after a plain install too.
  package_dir={'official_selftrain.gin_configs': 'gin_configs'},
  package_data={
    'official_selftrain.gin_configs': ['*.gin', 'common/*.gin'],
    # Released teachers (`make demo` starts from one).
    'official_selftrain': ['released/*/*'],
  },
  install_requires=INSTALL_REQUIRES,
  extras_require={'dev': ['pytest', 'ruff', 'setuptools']},
  entry_points={
    'console_scripts': [
      'official_selftrain_train=official_selftrain.train:entry',
    ]
    + [
      f'official_selftrain_{tool}=official_selftrain.tools.{tool}:entry'
      for tool in TOOLS
    ]
  },
)
