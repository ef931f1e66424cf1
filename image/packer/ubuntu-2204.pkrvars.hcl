# Ubuntu 22.04 (Gen2), as image-builder's ubuntu-2204-gen2 var file.
# packer build -only='nodekeeper.azure-arm.ubuntu-2204' -var-file=this ...
build_name = "nodekeeper"
ubuntu_2204_image = {
  publisher = "Canonical"
  offer     = "0001-com-ubuntu-server-jammy"
  sku       = "22_04-lts-gen2"
  version   = "latest"
}
