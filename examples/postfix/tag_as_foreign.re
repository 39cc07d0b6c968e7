# check_sender_access map, last entry of smtpd_sender_restrictions (main.cf).
#
# Reached only by clients that are neither in mynetworks nor SASL-authenticated: their mail
# is inbound. This FILTER replaces the ORIGINATING tag from tag_as_originating.re (the last
# FILTER action wins) and sends the message to postseal's default bank on 10024: verified,
# checked, never signed, reinjected on 10025. It names the same target as main.cf's
# content_filter on purpose, so tagged and untagged foreign mail take one path.
/^/  FILTER amavisfeed:[127.0.0.1]:10024
