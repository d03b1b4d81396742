"""Fine-tuning tasks: what each is (spec, built-in table, a matrix's catalogue) and where its
examples come from (sources, custom tasks). How each family is fine-tuned is finetune/families/.
"""
