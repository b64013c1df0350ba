"""RO e-Factura: the UBL 2.1 CIUS-RO XML of an invoice and its validation."""
