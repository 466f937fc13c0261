"""Qt side of CloudFree: menu actions and dialogs. They only run algorithms; no maths here."""
