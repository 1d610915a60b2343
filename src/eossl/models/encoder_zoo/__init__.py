"""Encoders that are not plain timm models, one file each, registered in
:data:`eossl.models.encoders.ENCODERS` by name (the registry imports every module of this package the
first time it is read, so a new file needs no list):

- ``resnet18-detail``, ``resnet50-detail`` (:mod:`.detail_resnet`): ResNets whose stem keeps full
  resolution and whose first residual block strides instead;
- ``wavelength-vit-s``, ``wavelength-vit-b`` (:mod:`.wavelength_vit`): ViTs whose patch embedding is
  generated from each band's centre wavelength (DOFA), so one set of weights takes any sensor.

:mod:`.spectral` holds the learned spectral reducer that ``encoder.spectral_channels`` puts in front of
any encoder (SpectralEarth's hyperspectral adapter). Modules here import :mod:`eossl.models.encoders`;
that module imports them only lazily, so there is no import cycle.
"""
