"""The endpoint side: the enterprise CA, smart-card enrolment, seal and open (SPEC §7).

Private keys live on PKCS#11 tokens (:mod:`.card`); every signature and every
decryption of a content-encryption key happens there. The CMS building blocks
(:mod:`.cmsbuild`) take any key object with the small protocol of :mod:`.keys`,
so a software key (tests, a reviewer's key file) and a card key are used the
same way. Verification is not here: ``open`` asks the gateway's engine.
"""
