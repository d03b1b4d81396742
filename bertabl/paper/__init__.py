"""The BERT paper as data: its published numbers and how its tables are laid out (which task
each column is, which row is the baseline). Read by the report, and by matrix validation (a
`report.paper_rows` entry must name a row of the table the matrix will be reported as)."""
