# check_sender_access map, first entry of smtpd_sender_restrictions (main.cf).
#
# Tags every message, whatever its sender (the null sender included: Postfix looks it up as
# "<>"), for postseal's ORIGINATING bank: made 7-bit and DKIM-signed on 10026, reinjected on
# 10027. FILTER is not a decision, so evaluation continues: permit_mynetworks and
# permit_sasl_authenticated keep this tag for our own users; everyone else goes on to
# tag_as_foreign.re, whose tag replaces this one.
#
# The sender address is not what decides here: anyone can write any MAIL FROM. The client
# (mynetworks, SASL login) decides, through where the restriction list stops.
/^/  FILTER amavisfeed:[127.0.0.1]:10026
