"""The offline bundle: everything an air-gapped Debian 12 host needs, in one archive.

``appliance bundle build`` runs on a machine with the network; the archive it
writes is carried to the admin's controller, and ``ansible/site.yml`` inside it
installs the appliance without downloading anything.
"""
