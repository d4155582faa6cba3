"""S/MIME as the gateway sees it: ``structure.inspect`` (layers, streamed and bounded).

Modules: ``limits`` (bounds and the two input errors), ``mime`` (headers, parameters,
boundaries, body decoding), ``walk`` (plain multipart trees), ``ber`` (streaming TLV
reader), ``cms`` (outer CMS structures), ``digest`` (hashing signed content),
``structure`` (the public ``inspect``).
"""
